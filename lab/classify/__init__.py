"""The image classifier: completed runs from the store, served by a Gradio app.

`python -m lab classify` serves it; the Streamlit Classify page's view (`ensure_server`)
starts it on demand. Image decoding happens only in `core.images`.
"""

from lab.classify.model import Classifier, ClassifierCache, ClassifierError, RunChoice
from lab.classify.predict import Prediction, predict

__all__ = ["Classifier", "ClassifierCache", "ClassifierError", "Prediction", "RunChoice",
           "predict"]
