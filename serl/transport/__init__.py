"""Actor <-> learner transport over ZeroMQ: wire codec, learner server, actor client, auth."""
