"""The market simulator: fake companies, moving prices, and the feed that publishes them.

``universe`` lists the companies, ``model`` moves their prices (pure, seeded),
``wire`` is the feed protocol, ``replay`` keeps the recent ticks, ``exchange`` is one run of
the market (model, epoch, replay) and ``dispatch`` answers its requests (all pure, but for
the time an inject is stamped with).
``pump`` runs the model on the clock, ``subscribers`` serves it to the connections that
``listener`` accepts, ``redis_feed`` publishes it into Redis instead, ``lifecycle`` runs a
market until a signal, ``state`` saves and loads it, ``cli`` is ``python -m simulator``.
"""
