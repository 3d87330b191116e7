"""Where jobs come from: the Midjourney web API, and folders written by earlier archivers."""
