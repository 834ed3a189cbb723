"""One module per input kind: what an event of that kind changes in its entity's state, and which
alert transitions it asks the desk (``streams/engine/desk.py``) for. Each exposes
``handle(cx, desk, ev, st, out)``; ``streams/engine/dispatch.py`` picks one by the event's type.
A new kind of input gets a new module here and one line in the dispatch table.
"""
