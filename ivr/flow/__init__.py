"""The flow language: model, loader, checker and graph."""
