"""core (layer 0): the ground floor every room uses: errors for people, the one atomic file
writer, the main process and its peers, redaction of secrets, disk and memory room, the clock."""
