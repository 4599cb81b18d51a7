"""Every plotly figure of the lab, one module per topic; the shared look is lab.figures.style.

``runs`` (live and overlay curves), ``depth`` (the Depth lab), ``analysis`` (ODE reversal),
``home``, ``experiments`` and ``bench`` (figures of the recorded benchmarks). Each builder returns
a ``plotly.graph_objects.Figure`` finished with ``style.finish``, so a page shows it with
``st.plotly_chart`` and the CLI writes the same figure with ``style.to_html``.
"""
