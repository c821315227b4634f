"""The web console: Starlette pages and JSON over the same views as the ``adw`` CLI.

``app.create_app`` builds the ASGI app over one Store and Config; ``server`` runs it with
uvicorn (``adw web``, or a thread of ``adw run`` when ``[web] listen`` is set); ``auth``
checks tokens, sessions and CSRF; ``pages`` builds each page's data from ``adws.views`` /
``adws.queue_views`` (the CLI's own functions); ``charts`` draws SVG on the server; ``live``
is the Server-Sent Events stream.  Imported only by ``adw web`` and by ``adw run`` with a
``[web] listen``: Starlette, Jinja2 and uvicorn never load for other commands.
"""
