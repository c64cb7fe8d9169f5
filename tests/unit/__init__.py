"""Tests of single modules, without ticker processes: one ``test_<module>.py`` per source module it covers. They
use real objects only: a socket pair, the redis-server fixture, the websockets library as a reference encoder."""
