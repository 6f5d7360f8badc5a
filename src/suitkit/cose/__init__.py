"""COSE (RFC 9052/9053), implemented by suitkit: keys, algorithms, Sign1/Sign/Mac0/Mac."""
