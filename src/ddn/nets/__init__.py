"""Neural networks: agent networks, mixers, fusion blocks, RND."""
