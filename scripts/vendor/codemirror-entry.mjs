// What Tandem's CodeMirror binding (web/static/js/codemirror.js) and the
// demo use of CodeMirror 6, as one ES module. Built by ./build.sh.
export { EditorState, EditorSelection, StateField, StateEffect, Annotation, Transaction, Prec, Compartment, RangeSetBuilder } from '@codemirror/state'
export {
  EditorView, Decoration, WidgetType, ViewPlugin, keymap, drawSelection, highlightActiveLine,
  highlightSpecialChars, rectangularSelection, placeholder, dropCursor
} from '@codemirror/view'
export { defaultKeymap, indentWithTab } from '@codemirror/commands'
export { searchKeymap, highlightSelectionMatches } from '@codemirror/search'
export { syntaxHighlighting, defaultHighlightStyle, HighlightStyle, LanguageSupport } from '@codemirror/language'
export { markdownLanguage } from '@codemirror/lang-markdown'
export { tags } from '@lezer/highlight'
