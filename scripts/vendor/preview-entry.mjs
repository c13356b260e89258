// Markdown to sanitised HTML for the demo's preview pane, as one ES
// module. Built by ./build.sh.
import { Marked } from 'marked'
import DOMPurify from 'dompurify'

export { Marked, DOMPurify }
