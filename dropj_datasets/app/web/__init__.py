"""The three web apps, one guard: `auth` (Host, token, Origin and size checks, sessions, binding), `annotate`
(feedback in the browser), `serve` (browse built datasets), `record` (drive and record in the browser), and their
`static/` pages. They parse, check and serve; the work is the library's.
"""
