"""The controller: step kinds, journal (state store), operator commands, controller HTTP API."""
