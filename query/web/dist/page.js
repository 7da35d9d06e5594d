// What every part of the page shares: its elements by id, new elements with text (never
// HTML: values shown come from logs and alerts, and are untrusted), and the caller's token.
export const TOKEN_KEY = "sluice-token";
export function $(id) {
    const el = document.getElementById(id);
    if (!el)
        throw new Error(`missing #${id}`);
    return el;
}
export function input(id) {
    return $(id);
}
export function select(id) {
    return $(id);
}
export function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined)
        node.textContent = text;
    if (cls)
        node.className = cls;
    return node;
}
export function authHeaders() {
    const token = sessionStorage.getItem(TOKEN_KEY);
    return token ? { Authorization: `Bearer ${token}` } : {};
}
