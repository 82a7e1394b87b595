// The result panel (Streamlit Components v2, see app.py): fills the confidence, image and bars from `data`,
// and sends one trigger, `label`, when the user confirms the answer or picks the true one: a digit, or
// `data.not_digit` for "Not a digit".
const DIGITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const NOT_DIGIT = "not-digit";  // the picker's value for "Not a digit" (sent as data.not_digit)
const percent = (p, digits) => (100 * p).toFixed(digits) + "%";

export default function ({ data, parentElement, setTriggerValue }) {
  const root = parentElement.querySelector(".panel") || build(parentElement);
  root.send = (value) => setTriggerValue("label", value === NOT_DIGIT ? data.not_digit : value);
  root.answer = data.is_digit ? data.digit : NOT_DIGIT;
  // Not a digit: the best guess and its confidence are said under the answer (app.py); here, how sure the "no" is.
  root.querySelector(".confidence").innerHTML = data.is_digit
    ? `Confidence <b>${data.confidence}</b>`
    : `Not a digit <b>${data.not_digit_score}</b>`;
  root.querySelectorAll(".bar").forEach((bar, digit) => {
    const p = data.probabilities[digit];
    bar.classList.toggle("top", digit === data.digit);
    bar.title = `${digit}: ${percent(p, 2)}`;
    bar.setAttribute("aria-label", `digit ${digit}: ${percent(p, 1)}`);
    bar.querySelector(".pct").textContent = percent(p, 0);
    bar.querySelector(".fill").style.height = Math.max(100 * p, 1) + "%";
  });
  root.querySelector(".yes-text").textContent = data.is_digit ? `Yes, it's ${data.digit}` : "Right, it's not a digit";
  const saved = data.label === data.not_digit ? NOT_DIGIT : data.label;
  if (root.image !== data.image) root.querySelector("img").src = data.image;  // re-setting a src reloads it
  if (root.image !== data.image || root.saved !== saved) {  // a new prediction or a new saved label
    root.image = data.image;
    root.saved = saved;
    pick(root, saved);
  }
}

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "panel";
  const bars = DIGITS.map((d) =>
    `<div class="bar"><span class="pct"></span><div class="fill"></div><span class="digit">${d}</span></div>`);
  const radios = [...DIGITS, NOT_DIGIT].map((d) =>
    `<button type="button" role="radio" aria-checked="false" data-value="${d}"${d === NOT_DIGIT ? ' class="none"' : ""}>` +
    `${d === NOT_DIGIT ? "Not a digit" : d}</button>`);
  root.innerHTML = `<div class="summary">
      <figure><p class="confidence"></p><img alt="The 28 by 28 image the model saw">
        <figcaption>What the model saw (28×28)</figcaption></figure>
      <div class="bars" role="img" aria-label="Probability of each digit">${bars.join("")}</div></div>
    <div class="feedback"><p class="question">Was it right?</p>
      <button type="button" class="yes"><span aria-hidden="true">✓ </span><span class="yes-text"></span></button>
      <div class="picker" role="radiogroup" aria-label="No, the true digit is">
        <span aria-hidden="true">No, the true digit is</span>${radios.join("")}</div>
      <button type="button" class="submit" disabled>Submit label</button></div>`;
  root.addEventListener("click", (event) => {
    const button = event.target.closest("button");
    if (!button || button.disabled) return;
    if (button.classList.contains("yes")) root.send(root.answer);
    else if (button.classList.contains("submit")) root.send(root.picked);
    else pick(root, button.dataset.value === NOT_DIGIT ? NOT_DIGIT : Number(button.dataset.value));
  });
  // A radio group as the ARIA pattern has it: one Tab stop (the picked radio, else the first), and the arrow keys,
  // Home and End move the choice along the eleven.
  root.querySelector(".picker").addEventListener("keydown", (event) => {
    const radios = [...root.querySelectorAll("[role=radio]")];
    const at = radios.indexOf(event.target);
    const moves = { ArrowRight: at + 1, ArrowDown: at + 1, ArrowLeft: at - 1, ArrowUp: at - 1, Home: 0,
      End: radios.length - 1 };
    if (at < 0 || !(event.key in moves)) return;
    event.preventDefault();
    const next = radios[(moves[event.key] + radios.length) % radios.length];
    pick(root, next.dataset.value === NOT_DIGIT ? NOT_DIGIT : Number(next.dataset.value));
    next.focus();
  });
  parentElement.appendChild(root);
  return root;
}

function pick(root, value) {
  root.picked = value;
  const radios = [...root.querySelectorAll("[role=radio]")];
  const none = !radios.some((radio) => radio.dataset.value === String(value));
  radios.forEach((radio, n) => {
    const checked = radio.dataset.value === String(value);
    radio.setAttribute("aria-checked", String(checked));
    radio.tabIndex = checked || (none && n === 0) ? 0 : -1;  // one Tab stop for the group
  });
  root.querySelector(".submit").disabled = value === null || value === undefined;
}
