"""The towers: UserTower (TorchRec embedding bags), ItemTower (CLIP image + BERT text), TwoTower."""
