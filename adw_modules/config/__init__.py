"""Stage 0, configuration: reading config.toml, its schema, validation with file:line, in-place edits.

Owns: ``schema`` (the frozen dataclasses and the loader), ``validation`` (the one validator
base every section uses), ``lines`` (path -> line), ``edit`` (tomlkit edits, atomic writes),
and the schema of each section: ``service`` ([coordinator], [store], [health], [metrics],
[retention]), ``github`` ([github]), ``workspace`` ([workspace]).

May import: ``outcomes``, ``routing.conditions`` and ``routing.pricing`` (a condition and a
price are each defined once, where they are used), ``queue.health`` / ``queue.retry`` (the
policy dataclasses a section builds), ``queue.tasks`` (priorities).  Nothing else.
"""

from __future__ import annotations
