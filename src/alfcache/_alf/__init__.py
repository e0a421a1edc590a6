"""The ALF grammar (which folders are sessions, which names are datasets), ids, and
which array shard (``--shard K/N``) a session belongs to."""
