"""Video on demand: what a finished broadcast and its clips are made of (storyboards, clip MP4s)."""
