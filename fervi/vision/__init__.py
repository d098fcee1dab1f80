"""Vision runtime shared by workers, `fervi predict`, offline analysis and evaluation."""
