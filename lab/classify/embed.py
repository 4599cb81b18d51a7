"""Embedding the classifier in another page: the frame's height follows the app's content.

A Gradio page loads iframe-resizer's child script (v4, ``static/js/iframeResizer.contentWindow
.min.js``) and, once a host page has said hello, posts its height whenever its layout changes
(``[iFrameSizer]<id>:<height>:<width>:<type>``). :func:`frame_sizer_script` is that host side in
a few lines: it greets every frame showing the app (again after each reload of the frame) and
sets the frame's height, and its Streamlit container's, to the height the app reports. Without
it (or without JavaScript) the frame keeps the fixed height it was given.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

FALLBACK_HEIGHT = 1150  # px: the frame's height until the app reports its own
MIN_HEIGHT = 300        # px: never shrink the frame below this (a reloading app reports ~0)

# the greeting iframe-resizer v4's child script waits for: id, body margin, calculate width,
# log, interval, public methods, auto resize (Gradio sizes itself), v1 margin, height method,
# background, padding, tolerance, in-page links, resize from, width method, mouse events
_INIT = "[iFrameSizer]lab-classify:0:false:false:32:true:false:null:bodyOffset:null:null:0:false" \
        ":child:scroll:false"

_SCRIPT = """<script>
(() => {
  const origin = %(origin)s, minHeight = %(min)d;
  const frames = () => Array.from(document.querySelectorAll("iframe"))
    .filter((f) => (f.src || "").startsWith(origin + "/"));
  const hello = (f) => f.contentWindow && f.contentWindow.postMessage(%(init)s, origin);
  if (!window.__labFrameSizer) {
    window.__labFrameSizer = true;
    window.addEventListener("message", (e) => {
      if (e.origin !== origin || typeof e.data !== "string"
          || !e.data.startsWith("[iFrameSizer]")) return;
      const [, height, , type] = e.data.slice(13).split(":");
      const frame = frames().find((f) => f.contentWindow === e.source);
      const px = Math.ceil(Number(height));
      if (!frame || type === "init" || !(px >= minHeight)) return;
      frame.style.height = px + "px";
      const box = frame.closest('[data-testid="stElementContainer"]');
      if (box) box.style.height = px + "px";
    });
    setInterval(() => {  // frames drawn later, or redrawn by a rerun, are greeted too
      for (const f of frames()) {
        if (f.dataset.labSized) continue;
        f.dataset.labSized = "1";
        f.addEventListener("load", () => hello(f));
        hello(f);
      }
    }, 500);
  }
})();
</script>"""


def origin(url: str) -> str:
    """``scheme://host:port`` of a URL (what the browser compares a message's origin with)."""
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"{url!r} is not an absolute http(s) URL of the classifier")
    return f"{parts.scheme}://{parts.netloc}"


def frame_sizer_script(url: str, *, min_height: int = MIN_HEIGHT) -> str:
    """The host page's script (for ``st.html(..., unsafe_allow_javascript=True)``) that makes
    every frame showing the app at ``url`` as tall as the app's content."""
    return _SCRIPT % {"origin": json.dumps(origin(url)), "init": json.dumps(_INIT),
                      "min": int(min_height)}
