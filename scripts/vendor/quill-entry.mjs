// Quill 2 (with its Snow theme) and quill-cursors (the core, without the
// style it injects: the demo's stylesheet carries it), as one ES module for
// web/static/js/quill.js and the demo. Built by ./build.sh.
import Quill from 'quill'
import QuillCursors from 'quill-cursors/core'

export { Quill, QuillCursors }
