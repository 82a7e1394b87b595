// Patches every canvas's shadow root with components/canvas_fix.css (the CSS arrives as data from app.py),
// again whenever Clear mounts a new canvas, and adds components/page.css to the document once. A Streamlit
// Components v2 element with no UI of its own.
// Why: streamlit-drawable-canvas 0.13 keeps its toolbar invisible (opacity 0) yet clickable at `top: -1rem`, over
// the top ~30 px of the canvas's right half, until the pointer has hovered for ~0.2 s: a stroke starting there
// (every touch, any fast mouse) was swallowed. The canvas lives in a shadow root, out of reach of page CSS, so the
// scoped style moves the toolbar into a band reserved above the canvas, ignoring the pointer unless hovered.
// Undo/redo/reset keep working for mouse users; Clear serves everyone.
export default function ({ data }) {
  const css = data.css;  // components/canvas_fix.css, sent by app.py
  if (data.pageCss && !document.head.querySelector("style[data-page-style]")) {
    const page = document.createElement("style");  // components/page.css: the layout on small screens
    page.dataset.pageStyle = "1";
    page.textContent = data.pageCss;
    document.head.appendChild(page);
  }
  const patch = () => {
    for (const host of document.querySelectorAll('[data-testid="stBidiComponentIsolated"]')) {
      const root = host.shadowRoot;
      if (root && !root.querySelector("style[data-canvas-fix]")) {
        const style = document.createElement("style");
        style.dataset.canvasFix = "1";
        style.textContent = css;
        root.appendChild(style);
      }
    }
  };
  patch();
  const observer = new MutationObserver(patch);  // Clear mounts a new canvas: patch it too
  observer.observe(document.body, { childList: true, subtree: true });
  return () => observer.disconnect();
}
