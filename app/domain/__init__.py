"""The pure model of Treadle: definitions, expressions, state and the decider. No I/O."""
