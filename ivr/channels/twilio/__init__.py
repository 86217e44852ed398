"""The flows over Twilio's voice webhooks (see `app.py`)."""
