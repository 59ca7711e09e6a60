export function mount(element, ctx) {}
