"""The market simulator: fake companies, moving prices, and the feed that publishes them.

``universe`` lists the companies, ``model`` moves their prices (pure, seeded),
``wire`` is the feed protocol, ``pump`` runs the model on the clock, ``subscribers``
serves it to the connections that ``listener`` accepts, ``redis_feed`` publishes it into
Redis instead, ``lifecycle`` runs a market until a signal, ``cli`` is ``python -m simulator``.
"""
