"""Where jobs come from: Midjourney's web API, and folders written by earlier archivers."""
