"""What the app shows around every page: its own words when the lab's server is gone.

When the browser loses the server, Streamlit opens its "Connection error" dialog: "Streamlit
server is not responding. Are you connected to the internet?". The lab runs on this machine, so
the question misleads. No Streamlit option changes that text (1.67: it is a constant of the
front end; a theme or config cannot reach it, and CSS cannot match text). So
:func:`connection_lost_script` is a few lines for ``st.html(..., unsafe_allow_javascript=True)``
that watch for that dialog and put the lab's sentence in place of that exact one; if a later
Streamlit words it differently, nothing is replaced and Streamlit's own text shows.
"""

from __future__ import annotations

import json

STREAMLIT_SAYS = "Are you connected to the internet?"
LAB_SAYS = ("The lab's server on this machine has stopped or is restarting; this page "
            "reconnects by itself once it runs again (scripts/app.sh starts it). Runs in "
            "progress keep going: they are separate processes.")

# the element holding the script takes no room at the top of the page (no flex gap either)
_HIDE = ('<style>[data-testid="stElementContainer"]:has(> [data-testid="stHtml"] '
         '> script[data-lab="connection"]) {display: none;}</style>')
_SCRIPT = _HIDE + """<script data-lab="connection">
(() => {
  if (window.__labConnectionWords) return;
  window.__labConnectionWords = true;
  const said = %(said)s, ours = %(ours)s;
  const reword = () => {
    for (const box of document.querySelectorAll('[data-testid="stDialog"] [role="dialog"]')) {
      const walker = document.createTreeWalker(box, NodeFilter.SHOW_TEXT);
      for (let node = walker.nextNode(); node; node = walker.nextNode()) {
        if (node.nodeValue.includes(said)) {  // the text node React owns: only its value changes
          node.nodeValue = node.nodeValue.includes("Streamlit server is not responding.")
            ? ours : node.nodeValue.replace(said, ours);
        }
      }
    }
  };
  new MutationObserver(reword).observe(document.body, {childList: true, subtree: true});
})();
</script>"""


def connection_lost_script() -> str:
    """The script that rewords Streamlit's connection-lost dialog (see the module's docstring)."""
    return _SCRIPT % {"said": json.dumps(STREAMLIT_SAYS), "ours": json.dumps(LAB_SAYS)}
