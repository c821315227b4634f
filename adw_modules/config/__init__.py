"""Stage 0, configuration: reading config.toml, its schema, validation with file:line, in-place edits.

Owns: ``schema`` (``Config``, ``ConfigError`` and the loader; it re-exports the section
dataclasses most code needs), ``validation`` (the one validator base every section uses),
``lines`` (path -> line), ``edit`` (tomlkit edits, atomic writes), and each section's frozen
dataclasses with their validation: ``providers`` ([providers.NAME], models, prices),
``routing`` ([routing]: rules, chains, model selectors, scenarios; conditions are parsed by
``routing.conditions``), ``service`` ([coordinator], [store], [health], [metrics],
[retention]), ``github`` ([github]), ``workspace`` ([workspace]); ``presets`` (provider presets:
built-in and from ``adw.providers`` plugins), ``interfaces`` (the CLI-interface registry:
API format, proxy support), ``catalog`` ([catalog]: the
discovered model pool's source and refresh), ``profiles`` ([profiles]: credential profiles,
laid over the raw data before the sections are validated), ``web`` ([web]: the console).

May import: ``routing.conditions`` and ``routing.pricing`` (a condition and a price are each
defined once, where they are used; neither imports config), ``queue.health``, ``queue.retry``
(the policy dataclasses a section builds), ``queue.tasks`` (priorities), ``workers.streams``
(the stream-format registry, so a format is known in one place, plugins included; it imports
no config), ``ops.plugins`` (the entry-point loader, which imports nothing of adw).  Nothing else.
"""

from __future__ import annotations
