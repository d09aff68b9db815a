// The console's languages: one JSON catalogue per language (i18n/<lang>.json), t(key, params)
// looks a sentence up; elements with data-i18n get their text from it. A key missing in
// the active catalogue is shown as the key and listed in window.__i18nMissing (the browser
// tests fail on it).

export const LANGUAGES = ["zh-CN", "en"];
let lang = "en";
let words = {};
const missing = new Set();
window.__i18nMissing = missing;

export async function setLanguage(next) {
  const chosen = LANGUAGES.includes(next) ? next : "en";
  const res = await fetch(`i18n/${chosen}.json`);
  words = await res.json();
  lang = chosen;
  document.documentElement.lang = chosen;
  applyStatic(document);
}

export function language() {
  return lang;
}

/** The language last picked in this browser (the login page offers it), if any. */
export function rememberedLanguage() {
  return localStorage.getItem("ringwatch.language");
}

export function rememberLanguage(chosen) {
  localStorage.setItem("ringwatch.language", chosen);
}

export function has(key) {
  return Object.prototype.hasOwnProperty.call(words, key);
}

export function t(key, params = {}) {
  let sentence = words[key];
  if (sentence === undefined) {
    missing.add(key);
    sentence = key;
  }
  return sentence.replace(/\{(\w+)\}/g, (m, name) => (params[name] === undefined || params[name] === null ? m : String(params[name])));
}

/** A value's word (e.g. term("status", "open")), or the value itself where there is none. */
export function term(group, value) {
  if (value === undefined || value === null || value === "") return "–";
  const key = `${group}.${value}`;
  return has(key) ? words[key] : String(value);
}

export function applyStatic(root) {
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-title]")) el.title = t(el.dataset.i18nTitle);
}

/** An incident's title in the current language (the hub's catalogue sends both). */
export function titleOf(incident) {
  return (incident.titles && incident.titles[lang]) || incident.title;
}
