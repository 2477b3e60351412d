/* Word lists and sentence templates for the demo corpus (spoken by espeak-ng). */
#ifndef SN_DEMO_WORDS_H
#define SN_DEMO_WORDS_H
static const char *const W_NOUN[] = {
    "farmer", "teacher", "doctor", "river", "mountain", "garden", "window", "basket", "letter", "bridge",
    "kitchen", "village", "market", "engine", "captain", "sailor", "painter", "bottle", "candle", "carpet",
    "forest", "island", "station", "ladder", "hammer", "pocket", "mirror", "pillow", "rabbit", "monkey",
    "tiger", "dragon", "pencil", "notebook", "compass", "blanket", "castle", "tower", "harbor", "valley",
    "orchard", "meadow", "cottage", "lantern", "violin", "trumpet", "guitar", "drummer", "singer", "baker",
    "butcher", "tailor", "driver", "pilot", "student", "neighbor", "stranger", "soldier", "merchant", "scholar",
    "puzzle", "wagon", "bicycle", "tractor", "airplane", "rocket", "planet", "comet", "shadow", "thunder",
    "weather", "winter", "summer", "morning", "evening", "journey", "message", "picture", "story", "secret",
    "kettle", "teapot", "sandwich", "apple", "orange", "lemon", "cherry", "carrot", "potato", "tomato",
    "museum", "library", "hospital", "factory", "theatre", "office", "school", "chapel", "fountain", "statue",
    "elephant", "penguin", "dolphin", "parrot", "turtle", "spider", "beetle", "pony", "puppy", "kitten"};
static const char *const W_ADJ[] = {
    "quiet", "heavy", "bright", "ancient", "tiny", "enormous", "careful", "clever", "gentle", "noisy",
    "yellow", "purple", "golden", "silver", "wooden", "broken", "empty", "crowded", "distant", "famous",
    "friendly", "hungry", "lonely", "lucky", "modern", "narrow", "patient", "polite", "proud", "rapid",
    "rusty", "shiny", "sleepy", "smooth", "strange", "sudden", "tender", "tired", "useful", "warm",
    "cold", "dusty", "fresh", "green", "humble", "jolly", "kind", "little", "muddy", "nervous",
    "old", "pale", "quick", "rough", "simple", "thin", "ugly", "vivid", "wild", "young"};
static const char *const W_VERB[] = {
    "carried", "painted", "opened", "closed", "followed", "watched", "visited", "repaired", "cleaned", "counted",
    "delivered", "discovered", "explored", "finished", "gathered", "helped", "joined", "lifted", "moved", "noticed",
    "ordered", "pulled", "pushed", "questioned", "reached", "remembered", "rescued", "showed", "studied", "touched",
    "wanted", "washed", "admired", "borrowed", "built", "bought", "caught", "chose", "drew", "found",
    "forgot", "held", "kept", "left", "lost", "met", "sold", "sent", "took", "threw"};
static const char *const W_ADV[] = {
    "slowly", "quickly", "quietly", "carefully", "happily", "suddenly", "gently", "loudly", "bravely", "calmly",
    "eagerly", "easily", "finally", "firmly", "gladly", "honestly", "kindly", "lazily", "neatly", "nervously",
    "openly", "patiently", "politely", "rarely", "safely", "sadly", "secretly", "softly", "swiftly", "warmly",
    "yesterday", "today", "again", "early", "later", "twice", "often", "never", "always", "soon"};
static const char *const W_NAME[] = {
    "Anna", "Ben", "Clara", "David", "Emma", "Felix", "Grace", "Henry", "Iris", "Jack",
    "Kate", "Leo", "Maria", "Noah", "Olivia", "Peter", "Rosa", "Sam", "Tina", "Victor",
    "Walter", "Yara", "Zoe", "Oscar", "Hannah", "Lucas", "Mila", "Tom", "Eva", "Paul"};
static const char *const W_PREP[] = {
    "across", "behind", "beside", "near", "under", "over", "through", "inside", "around", "past",
    "toward", "along", "beyond", "between", "outside"};
static const char *const W_PLACE[] = {
    "the old bridge", "the harbor", "the market square", "the train station", "the little garden",
    "the dark forest", "the city hall", "the riverbank", "the village school", "the mountain road",
    "the bakery", "the quiet library", "the busy street", "the north gate", "the green hill"};
static const char *const W_NUM[] = {"two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "twelve", "twenty", "forty"};
static const char *const W_TIME[] = {"on Monday", "in the morning", "after lunch", "at midnight", "last week",
                                     "before dinner", "in the spring", "every evening", "on Sunday", "at noon"};
/* Templates: S subject (the adj noun / name), V verb, O object, A adverb,
 * P preposition+place, N number, T time phrase, Q name. */
static const char *const W_TEMPLATE[] = {
    "S V O A.", "S A V O P.", "T, S V O.", "Q said that S V O.", "Did S V O P?",
    "S V N O P T.", "A, S V O and O.", "Why did S V O T?", "S V O, and then S V O A.",
    "Q and Q V O P.", "S never V O.", "Please tell Q that S V O."};
#endif
