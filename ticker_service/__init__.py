"""ticker: a live breaking-news push service. The data path: ingest → broker → worker → hub → transports."""

__version__ = "0.1.0"
