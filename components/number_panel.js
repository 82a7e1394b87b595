// The number panel (Streamlit Components v2, see views/number.py): the drawing with each digit's box and, under
// it, its confidence; then the feedback. One trigger, `number`: the number the user says they wrote, as text,
// sent by "Yes, it's 2026", by a digit fixed in its own picker (one at a time), or typed whole and saved.
export default function ({ data, parentElement, setTriggerValue }) {
  const root = parentElement.querySelector(".panel") || build(parentElement);
  root.send = (value) => setTriggerValue("number", value);
  root.data = data;
  if (root.image !== data.image) {  // a new reading: fill everything anew
    root.image = data.image;
    root.querySelector("img").src = data.image;
    root.querySelector("img").alt = `Your drawing, each digit boxed with its confidence: ${data.shown}`;
    root.querySelector(".yes").hidden = !data.number;
    root.querySelector(".yes-text").textContent = data.number ? `Yes, it's ${data.number}` : "";
    root.querySelector(".places").innerHTML = "<span>or fix a digit</span>" + data.parts
      .map((part, n) => `<select data-place="${n}" aria-label="Digit ${n + 1}" title="Digit ${n + 1}">` +
        [...Array(10).keys()].map((d) => `<option${d === part.digit ? " selected" : ""}>${d}</option>`).join("") +
        `</select>`)
      .join("");
  }
  const typed = root.querySelector("input");
  const saved = data.label ?? data.number ?? "";
  if (root.saved !== saved) {
    root.saved = saved;
    typed.value = saved;
    if (data.label && data.label.length === data.parts.length) {  // the pickers follow the saved number
      root.querySelectorAll("select").forEach((select, n) => { select.value = data.label[n]; });
    }
  }
}

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "panel";
  root.innerHTML = `<img>
    <div class="feedback" role="group" aria-label="Was it right?">
      <button type="button" class="yes"><span aria-hidden="true">✓ </span><span class="yes-text"></span></button>
      <div class="places" role="group" aria-label="Or fix one digit"><span>or fix a digit</span></div>
      <form novalidate><label>No, it is <input inputmode="numeric" pattern="[0-9]{1,8}" maxlength="8"
        autocomplete="off" required></label><button type="submit">Save number</button></form>
      <p class="problem" role="alert" hidden></p></div>`;
  const problem = root.querySelector(".problem");
  root.addEventListener("click", (event) => {
    if (event.target.closest(".yes")) root.send(root.data.number);
  });
  root.addEventListener("change", (event) => {  // a digit fixed in its picker: the rest as they are
    const select = event.target.closest("select");
    if (!select) return;
    const digits = [...root.querySelectorAll("select")].map((s) => s.value);
    root.send(digits.join(""));
  });
  root.querySelector("form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = root.querySelector("input").value.trim();
    problem.hidden = /^[0-9]{1,8}$/.test(value);
    problem.textContent = problem.hidden ? "" : "Type the number with digits 0-9 only (1 to 8 of them).";
    if (problem.hidden) root.send(value);
  });
  parentElement.appendChild(root);
  return root;
}
