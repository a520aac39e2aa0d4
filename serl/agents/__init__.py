"""Learning agents behind one contract (DESIGN §2): update, act, policy_state, state_dict."""
