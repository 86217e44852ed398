"""The central switch: where every transaction of the hotline goes."""
