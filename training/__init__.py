"""Training for FERVI's emotion classifier: loaders, honest splits, the CNN-LSTM, export to models/."""
