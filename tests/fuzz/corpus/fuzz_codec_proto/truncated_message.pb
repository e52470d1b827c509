B
Main