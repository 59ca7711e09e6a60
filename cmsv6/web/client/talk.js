// Placeholder: the owner (issue 13) replaces it. mount(element, ctx) draws the view.
export function mount(element, ctx) {
  element.textContent = "Not built yet.";
}
