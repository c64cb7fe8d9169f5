"""The arq worker: turns a recorded flash into live events for every hub (and, later, mobile pushes)."""
