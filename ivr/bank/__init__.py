"""The bank: customer file, identification, phone PIN, and the data behind them."""
