"""Go-live notifications: follower index, fan-out planning, delivery (docs/ARCHITECTURE.md, "Notifications").

``plan.py`` and ``pending.py`` are pure; ``mail.py`` sends e-mail over SMTP; ``index.py`` keeps the processor's own
Valkey keys, ``planner.py`` holds the Faust agents and ``deliverer.py`` the
delivery consumer group.  ``add_notification_agents`` is called by ``build_processors``.
"""
