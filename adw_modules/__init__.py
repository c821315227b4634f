"""adw library, in packages named after the stages of a task's flow.

``sources`` (where tasks come from) -> ``queue`` (durable state, claiming) -> ``routing``
(which provider and model) -> ``workspace`` (the task's git worktree) -> ``workers`` (one
attempt of an agent CLI) -> back to ``queue`` (what the task becomes).  ``config`` is read by
all of them; ``ops`` watches them.  ``coordinator`` is where the stages meet (``dispatch`` holds the values
its steps pass along, ``finishing`` records an attempt's end); ``outcomes`` is the vocabulary they
share; ``providers`` is seed 003's face over ``routing.providers``.

The CLI lives in ``adws`` and is never imported from here.
"""
