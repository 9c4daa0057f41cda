"""Fleet learning: many devices train one model together on Flower, exchanging only their trained
tensors (payload), averaged by a Flower Strategy (strategy), on one machine (simulation).
Needs the optional `fleet` extra (flwr)."""
