"""The image classifier: completed runs from the store, served by a Gradio app.

`python -m lab classify` serves it; `lab.views.classify.ensure_server` starts it on demand for
the Streamlit Classify page. Image decoding happens only in `core.images`.
"""

from lab.classify.model import Classifier, ClassifierCache, ClassifierError, RunChoice
from lab.classify.predict import Prediction, predict

__all__ = ["Classifier", "ClassifierCache", "ClassifierError", "Prediction", "RunChoice",
           "predict"]
