"""Settings, declared once (`schema`) and from there validated, worded and written out.

`durations` and `kinds` are the value types in their file form; `layout` says where each
setting lives in the file; `reading` finds and reads the file; `messages` words its problems;
`template` writes the commented file `audit init` creates. The rest of the program imports
all of it from `job.config`.
"""
