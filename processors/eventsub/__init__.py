"""EventSub webhooks: callback verification and notification delivery (``dispatcher.py``)."""
