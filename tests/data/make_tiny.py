"""Write the tiny synthetic data set the tests use (tests/data/tiny/): run it to regenerate.

60 users, 40 items, sequences of 8-16 items that mostly step forward by one or two item
ids, so a sequential model has a pattern to learn; every item has two attribute tokens.
"""

import random
from pathlib import Path

N_USERS, N_ITEMS, MIN_LEN, MAX_LEN, SEED = 60, 40, 8, 16, 7


def main():
    rng = random.Random(SEED)
    out = Path(__file__).parent / "tiny"
    out.mkdir(exist_ok=True)
    with open(out / "tiny.inter", "w") as inter:
        inter.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(1, N_USERS + 1):
            item = rng.randint(1, N_ITEMS)
            for position in range(1, rng.randint(MIN_LEN, MAX_LEN) + 1):
                inter.write(f"u{user}\ti{item}\t{position}.0\n")
                item = (item + rng.choice((1, 1, 2)) - 1) % N_ITEMS + 1
    with open(out / "tiny.item", "w") as items:
        items.write("item_id:token\tcategories:token_seq\n")
        for item in range(1, N_ITEMS + 1):
            items.write(f"i{item}\tc{item % 5} g{item % 3}\n")


if __name__ == "__main__":
    main()
