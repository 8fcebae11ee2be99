"""The chip configuration a hardened, scheduled module is built from: ROM images, memory map, projection."""
