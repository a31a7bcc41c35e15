"""Real faces: the shipped face detector, the crop spec from its box to the model input, transforms
with exact label changes, real photos from installed packages, and the real-photo check."""
