"""Small files in the public formats, with the quirks of the real ones, for the reader tests."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

CUSTOMER_A = "00000dbacae5abe5e23885899a1fa44253a17956c6d1c3d25f88aa139fdfc657"
CUSTOMER_B = "0000423b00ade91418cceaf3b26c6af3dd342b51fd051eec9c12fb36984420fa"


def write(path: Path, text: str | bytes, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode(encoding))
    return path


def jpeg(path: Path, colour: str = "red") -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (6, 4), colour).save(buffer, "JPEG")
    return write(path, buffer.getvalue())


def jsonl(path: Path, records: list[dict | str]) -> Path:
    """One record per line; a string is written as the line itself (blank or broken lines)."""
    return write(path, "".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in records))


ARTICLES_HEADER = (
    "article_id,product_code,prod_name,product_type_no,product_type_name,product_group_name,"
    "graphical_appearance_no,graphical_appearance_name,colour_group_code,colour_group_name,"
    "department_no,department_name,index_code,index_name,section_no,section_name,garment_group_no,"
    "garment_group_name,detail_desc\n"
)


def hm(folder: Path) -> Path:
    """Three articles (ids with and without their leading zero, a quoted description with commas and
    quotes), two customers, transactions with one bad row per reason, an image missing, one corrupt."""
    write(
        folder / "articles.csv",
        ARTICLES_HEADER
        + "0108775015,0108775,Strap top,253,Vest top,Garment Upper body,1010016,Solid,09,Black,1676,"
        'Jersey Basic,A,Ladieswear,16,Womens Everyday Basics,1002,Jersey Basic,"Jersey top, with ""thin"" straps."\n'
        + "108775044,0108775,Strap top (1),253,Vest top,Garment Upper body,1010016,Solid,10,White,1676,"
        "Jersey Basic,A,Ladieswear,16,Womens Everyday Basics,1002,Jersey Basic,\n"
        + "110065001,0110065,OP T-shirt (Idro),306,Bra,Underwear,1010016,Solid,09,Black,1339,Clean Lingerie,"
        "B,Lingeries/Tights,61,Womens Lingerie,1017,\"Under-, Nightwear\",Microfibre T-shirt bra.\n",
    )
    write(
        folder / "customers.csv",
        "customer_id,FN,Active,club_member_status,fashion_news_frequency,age,postal_code\n"
        f"{CUSTOMER_A},,,ACTIVE,NONE,49,52043ee2162cf5aa7ee79974281641c6f11a68d276429a91f8ca0d4b6efa8100\n"
        f"{CUSTOMER_B},1.0,1.0,ACTIVE,Regularly,25.0,2973abc54daa8a5f8ccfe9362140c63247c5eee03f1d93f4c830291c32bc3057\n",
    )
    write(
        folder / "transactions_train.csv",
        "t_dat,customer_id,article_id,price,sales_channel_id\n"
        f"2018-09-20,{CUSTOMER_A},0108775015,0.0508305084745762,2\n"
        f"2018-09-20,{CUSTOMER_A},0110065001,0.0304915254237288,2\n"
        f"2018-09-21,{CUSTOMER_B},108775044,0.0169322033898305,1\n"
        f"2018-13-45,{CUSTOMER_B},108775044,0.0169322033898305,1\n"  # unparsable timestamp
        f"2018-09-22,{CUSTOMER_B},abc,0.01,1\n"  # unparsable id
        f"2018-09-22,{CUSTOMER_B},999999999,0.01,1\n"  # unknown item
        "2018-09-22,,108775044,0.01,1\n",  # null id
    )
    jpeg(folder / "images" / "010" / "0108775015.jpg")
    write(folder / "images" / "011" / "0110065001.jpg", b"not a jpeg at all")
    return folder


def retailrocket(folder: Path) -> Path:
    """Events with ms timestamps and every event type, property files in two parts (a later
    `categoryid` wins; hashed values), a category tree, and one bad row per reason."""
    write(
        folder / "events.csv",
        "timestamp,visitorid,event,itemid,transactionid\n"
        "1433221332117,257597,view,355908,\n"
        "1433224214164,992329,addtocart,248676,\n"
        "1433221999827,111016,transaction,355908,4000\n"
        "1433221999828,111016,click,355908,\n"  # unknown event type
        "1433221999829,x,view,355908,\n"  # unparsable id
        "1433221999830,5,view,777,\n"  # unknown item
        "14332219998300000,5,view,355908,\n",  # timestamp out of range
    )
    write(
        folder / "item_properties_part1.csv",
        "timestamp,itemid,property,value\n"
        "1435460400000,355908,categoryid,1016\n"
        "1441508400000,355908,categoryid,1338\n"
        "1439089200000,248676,available,1\n"
        "1439089200000,248676,categoryid,209\n",
    )
    write(
        folder / "item_properties_part2.csv",
        "timestamp,itemid,property,value\n"
        "1439089200000,248676,888,1116713 n960.000 639502\n"
        "bad,248676,790,n5.000\n"  # unparsable timestamp
        "1439089200000,4,790,n5.000\n",
    )
    write(folder / "category_tree.csv", "categoryid,parentid\n1016,213\n1338,213\n213,1673\n1673,\n209,\n")
    return folder


def amazon(folder: Path, category: str = "All_Beauty") -> Path:
    """Reviews (ms timestamps, one as a string, unicode text, a blank line, bad rows) and metadata
    (a duplicate item, images local by item id, by URL file name, listed but absent, or none)."""
    url = "https://m.media-amazon.com/images/I/71i77AuI9xL._SL1500_.jpg"
    review = {"title": "Nice", "text": "café ☕", "images": [], "asin": "B0", "helpful_vote": 0, "verified_purchase": True}
    jsonl(
        folder / f"{category}.jsonl",
        [
            {**review, "rating": 5.0, "parent_asin": "P1", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": 1588687728923},
            {**review, "rating": 3.0, "parent_asin": "P2", "user_id": "AGKHLEW2SOWHNMFQIJGBECAF7INQ", "timestamp": "1588615855070"},
            "",
            {**review, "rating": 4.0, "parent_asin": "P3", "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "timestamp": 1589665266052},
            {**review, "rating": "five", "parent_asin": "P1", "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "timestamp": 1589665266053},
            {**review, "rating": 1.0, "parent_asin": "P9", "user_id": "AFQLNQNQYFWQZPJQZS6V3NZU4QBQ", "timestamp": 1589665266054},
        ],
    )
    image = {"thumb": None, "large": url, "variant": "MAIN", "hi_res": None}
    meta = {"average_rating": 4.5, "rating_number": 10, "price": None, "videos": [], "details": {"Brand": "X"}}
    jsonl(
        folder / f"meta_{category}.jsonl",
        [
            {**meta, "main_category": "All Beauty", "title": "Soap", "features": ["Vegan", "Lavender"], "description": ["A bar of soap."],
             "images": [image], "store": "Acme", "categories": [], "parent_asin": "P1"},
            {**meta, "main_category": "All Beauty", "title": "Comb", "features": [], "description": [],
             "images": [{**image, "large": "https://x/other.jpg"}], "store": None, "categories": ["Beauty", "Tools", "Combs"], "parent_asin": "P2"},
            {**meta, "main_category": "All Beauty", "title": "Brush", "features": [], "description": [],
             "images": [{**image, "large": "https://x/absent.jpg"}], "store": "Acme", "categories": [], "parent_asin": "P3"},
            {**meta, "main_category": None, "title": "Bare", "features": [], "description": [], "images": [],
             "store": None, "categories": [], "parent_asin": "P4"},
            {**meta, "main_category": "All Beauty", "title": "Soap again", "features": [], "description": [],
             "images": [], "store": "Acme", "categories": [], "parent_asin": "P1"},
        ],
    )
    jpeg(folder / "images" / "71i77AuI9xL._SL1500_.jpg")
    jpeg(folder / "images" / "P2.jpg", "blue")
    return folder
