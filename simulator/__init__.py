"""The market simulator: fake companies, moving prices, and the feed that publishes them.

``universe`` lists the companies, ``model`` moves their prices (pure, seeded),
``wire`` is the feed protocol, ``market`` serves it on a socket, ``cli`` is
``python -m simulator``.
"""
