// Patches every canvas's shadow root with components/canvas_fix.css (the CSS arrives as data from app.py),
// again whenever Clear mounts a new canvas, and adds components/page.css to the document once. A Streamlit
// Components v2 element with no UI of its own.
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
