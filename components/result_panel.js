// The result panel (Streamlit Components v2, see app.py): fills the confidence, image and bars from `data`,
// and sends one trigger, `label`, when the user confirms or picks the true digit.
const DIGITS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
const percent = (p, digits) => (100 * p).toFixed(digits) + "%";

export default function ({ data, parentElement, setTriggerValue }) {
  const root = parentElement.querySelector(".panel") || build(parentElement);
  root.send = (label) => setTriggerValue("label", label);
  root.digit = data.digit;
  root.querySelector(".confidence b").textContent = data.confidence;
  root.querySelectorAll(".bar").forEach((bar, digit) => {
    const p = data.probabilities[digit];
    bar.classList.toggle("top", digit === data.digit);
    bar.title = `${digit}: ${percent(p, 2)}`;
    bar.setAttribute("aria-label", `digit ${digit}: ${percent(p, 1)}`);
    bar.querySelector(".pct").textContent = percent(p, 0);
    bar.querySelector(".fill").style.height = Math.max(100 * p, 1) + "%";
  });
  root.querySelector(".yes-text").textContent = `Yes, it's ${data.digit}`;
  if (root.image !== data.image) root.querySelector("img").src = data.image;  // re-setting a src reloads it
  if (root.image !== data.image || root.saved !== data.label) {  // a new prediction or a new saved label
    root.image = data.image;
    root.saved = data.label;
    pick(root, data.label);
  }
}

function build(parentElement) {
  const root = document.createElement("div");
  root.className = "panel";
  const bars = DIGITS.map((d) =>
    `<div class="bar"><span class="pct"></span><div class="fill"></div><span class="digit">${d}</span></div>`);
  const radios = DIGITS.map((d) =>
    `<button type="button" role="radio" aria-checked="false" data-digit="${d}">${d}</button>`);
  root.innerHTML = `<div class="summary">
      <figure><p class="confidence">Confidence <b></b></p><img alt="The 28 by 28 image the model saw">
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
    if (button.classList.contains("yes")) root.send(root.digit);
    else if (button.classList.contains("submit")) root.send(root.picked);
    else pick(root, Number(button.dataset.digit));
  });
  parentElement.appendChild(root);
  return root;
}

function pick(root, digit) {
  root.picked = digit;
  root.querySelectorAll("[role=radio]").forEach((radio) =>
    radio.setAttribute("aria-checked", String(Number(radio.dataset.digit) === digit)));
  root.querySelector(".submit").disabled = digit === null;
}
